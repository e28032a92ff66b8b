"""Reading a person's recordings: video and audio decoding, biosignal files."""

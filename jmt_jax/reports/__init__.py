"""What runs leave behind for people to read: figures and tables."""

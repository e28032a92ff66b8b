// The microphone's samples, in pieces of about 40 ms, handed to the page as 16-bit
// integers with the audio clock's time of their first sample.
class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.size = Math.round(sampleRate * 0.04);
    this.piece = new Int16Array(this.size);
    this.filled = 0;
    this.start = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      if (this.filled === 0) this.start = currentTime + i / sampleRate;
      const x = Math.max(-1, Math.min(1, channel[i]));
      this.piece[this.filled++] = Math.round(x * 32767);
      if (this.filled === this.size) {
        this.port.postMessage({time: this.start, samples: this.piece.buffer}, [this.piece.buffer]);
        this.piece = new Int16Array(this.size);
        this.filled = 0;
      }
    }
    return true;
  }
}

registerProcessor("capture", Capture);

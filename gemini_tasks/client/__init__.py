"""What applications call: the batch, streaming and TTS processors and the jobs they send."""

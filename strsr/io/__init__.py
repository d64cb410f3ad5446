"""Files in and out: images (read, quantise, write), output naming, atomic writes."""

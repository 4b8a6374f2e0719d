"""Making trained codecs: bottlenecks learned, quantizers fitted, at a split of a backbone."""

"""What crosses a link: the tensor wire format, and later feature codecs."""

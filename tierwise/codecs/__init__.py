"""What crosses a link: the tensor wire format, input and feature codecs, trained codecs."""

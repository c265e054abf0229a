"""How much the scanner is willing to inspect; anything beyond is reported unsafe (``too-large``)."""

#: Total number of bytes (after decompression) the scanner will look at for one file on disk.
MAX_INSPECT_BYTES = 4 * 1024**3
#: Containers (archives, compressed streams) nested deeper than this are not inspected.
MAX_NESTING = 3
#: An archive member whose declared size exceeds its compressed size this many times (and is big) is a bomb.
MAX_COMPRESSION_RATIO = 1000
#: Members smaller than this are never treated as bombs, whatever their ratio.
RATIO_MIN_SIZE = 64 * 1024**2

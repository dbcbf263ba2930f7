"""ncodec: neural compression codecs with a versioned, bit-exact bitstream."""

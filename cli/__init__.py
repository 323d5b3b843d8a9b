"""vggish-rt command line."""

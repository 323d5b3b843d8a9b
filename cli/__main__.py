"""``python -m vggish_rt.cli``."""
from vggish_rt.cli.app import main

main()

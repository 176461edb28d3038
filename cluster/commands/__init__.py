"""One module per `aigc-edge` subcommand; each is a thin shell over a library function."""

"""Chart colours: run statuses (the hues of the status pills) and price lines by source."""

# Bar colours by run status (the same hues as the status pills).
RUN_COLOURS = {
    "success": "#2da44e",
    "failed": "#cf222e",
    "interrupted": "#bf8700",
    "running": "#0969da",
}
UNKNOWN_RUN_COLOUR = "#8c959f"
ANOMALY_COLOUR = "#bc4c00"
# Price lines by source: distinct from the status colours.
SOURCE_COLOURS = {"csv": "#0969da", "coingecko": "#bf3989", "coinpaprika": "#8250df"}
OTHER_COLOUR = "#57606a"
TIMELINE_SLOTS = 20
DOTS_UP_TO = 60  # points drawn as dots too when a line has at most this many


def source_colour(source: str) -> str:
    return SOURCE_COLOURS.get(source, OTHER_COLOUR)

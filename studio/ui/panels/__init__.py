"""One panel per concern of the main window."""

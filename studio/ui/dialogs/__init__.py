"""Dialogs of the main window: settings, about and licences."""

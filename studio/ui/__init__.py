"""The thin Qt layer: widgets, panels, dialogs and theme."""

"""GAN Studio: the desktop application, its Qt-free engine and its command line."""

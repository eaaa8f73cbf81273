"""Speed: measuring instructions and tokens per second, recording results per commit, plotting them, and
bisecting a regression across commits."""

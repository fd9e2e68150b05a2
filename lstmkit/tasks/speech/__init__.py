"""Speech recognition on FSDD: isolated digits (pooling) and connected digits (CTC)."""

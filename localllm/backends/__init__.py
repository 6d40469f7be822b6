"""Model backends behind one protocol; implementations are imported only when chosen."""

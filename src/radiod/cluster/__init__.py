"""radiod instances sharded behind nginx: the proxy's config (`proxy`) and a local cluster
of instances plus the proxy, started, watched and stopped together (`supervisor`)."""

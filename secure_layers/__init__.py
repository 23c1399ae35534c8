"""secure-layers: sign in once to a secured ArcGIS Server, see its map layers, never leak a secret."""

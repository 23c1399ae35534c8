"""Third-party ArcGIS-REST peers the tests run on loopback (see `koop/`)."""

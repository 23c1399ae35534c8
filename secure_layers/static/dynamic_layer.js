/* secure-layers: a Leaflet layer that draws one MapServer export image for the current view.
 *
 * Like Esri Leaflet's dynamicMapLayer (f=image), but it asks the app's same-origin export
 * proxy, so no token ever reaches the browser. After each pan or zoom it requests a new image
 * and swaps it in once loaded; no Streamlit rerun is involved.
 */
(function () {
  "use strict";
  if (!window.L || L.SecureLayersDynamic) {
    return;
  }

  // The last few loaded images by URL: a layer re-created with the same view (after an
  // opacity change, say) reuses its image instead of fetching it again.
  var recentImages = [];
  var RECENT_LIMIT = 6;

  function rememberImage(url, image) {
    recentImages = recentImages.filter(function (entry) {
      return entry.url !== url;
    });
    recentImages.push({ url: url, image: image });
    if (recentImages.length > RECENT_LIMIT) {
      recentImages.shift();
    }
  }

  function recentImage(url) {
    for (var i = 0; i < recentImages.length; i++) {
      if (recentImages[i].url === url) {
        return recentImages[i].image;
      }
    }
    return null;
  }

  L.SecureLayersDynamic = L.Layer.extend({
    options: {
      opacity: 1,
      format: "png32",
      transparent: true,
      dpi: 96,
      layers: null,
      maxSize: [4096, 4096],
      debounce: 150,
      retryDelay: 5000, // after a failed image: try the same view again after 5 s, 10 s, 20 s…
      retryMaxDelay: 60000,
      retries: 10,
    },

    initialize: function (exportUrl, options) {
      this._exportUrl = exportUrl;
      this._sequence = 0;
      this._failures = 0;
      L.setOptions(this, options);
    },

    onAdd: function (map) {
      this._status = L.control({ position: "topright" });
      this._status.onAdd = function () {
        return L.DomUtil.create("div", "secure-layers-status leaflet-bar");
      };
      this._status.addTo(map);
      map.on("moveend resize", this._schedule, this);
      this._update();
    },

    onRemove: function (map) {
      map.off("moveend resize", this._schedule, this);
      clearTimeout(this._timer);
      this._sequence += 1;
      map.removeControl(this._status);
      if (this._overlay) {
        map.removeLayer(this._overlay);
        this._overlay = null;
      }
    },

    setOpacity: function (opacity) {
      this.options.opacity = opacity;
      if (this._overlay) {
        this._overlay.setOpacity(opacity);
      }
      return this;
    },

    _showStatus: function (text) {
      var box = this._status.getContainer();
      box.textContent = text;
      box.style.display = text ? "block" : "none";
      box.style.padding = "2px 8px";
      box.style.background = "rgba(255, 255, 255, 0.9)";
    },

    _schedule: function () {
      this._failures = 0; // a new view starts a new round of retries
      clearTimeout(this._timer);
      this._timer = setTimeout(L.bind(this._update, this), this.options.debounce);
    },

    _requestUrl: function (bounds, size) {
      var crs = this._map.options.crs;
      var sw = crs.project(bounds.getSouthWest());
      var ne = crs.project(bounds.getNorthEast());
      var width = Math.min(size.x, this.options.maxSize[0]);
      var height = Math.min(size.y, this.options.maxSize[1]);
      var params = {
        bbox: [sw.x, sw.y, ne.x, ne.y].join(","),
        bboxSR: 3857,
        imageSR: 3857,
        size: width + "," + height,
        dpi: this.options.dpi,
        format: this.options.format,
        transparent: this.options.transparent,
        f: "image",
      };
      if (this.options.layers) {
        params.layers = this.options.layers;
      }
      return this._exportUrl + L.Util.getParamString(params);
    },

    _update: function () {
      var map = this._map;
      if (!map) {
        return;
      }
      var size = map.getSize();
      if (size.x < 1 || size.y < 1) {
        return; // the map is not laid out yet; "resize" brings us back
      }
      var bounds = map.getBounds();
      var url = this._requestUrl(bounds, size);
      var sequence = ++this._sequence;
      var cached = recentImage(url);
      if (cached) {
        if (!this._overlay || this._overlay.getElement() !== cached) {
          this._show(url, cached, bounds); // the same image already on show needs nothing
        }
        return;
      }
      var image = new Image();
      var layer = this;
      this._showStatus("Drawing layer…");
      image.onload = function () {
        if (sequence !== layer._sequence || !layer._map) {
          return; // a newer view was requested meanwhile
        }
        rememberImage(url, image);
        layer._show(url, image, bounds);
      };
      image.onerror = function () {
        if (sequence === layer._sequence && layer._map) {
          layer._showStatus("The layer could not be drawn; the sidebar will say why. Trying again…");
          layer.fire("error", { url: url });
          layer._retryLater();
        }
      };
      image.src = url;
    },

    _retryLater: function () {
      // The server may be back soon (a restart, a blip): redraw the same view without a pan.
      if (this._failures >= this.options.retries) {
        return;
      }
      var delay = Math.min(this.options.retryMaxDelay, this.options.retryDelay * Math.pow(2, this._failures));
      this._failures += 1;
      clearTimeout(this._timer);
      this._timer = setTimeout(L.bind(this._update, this), delay);
    },

    _show: function (url, image, bounds) {
      // Hand Leaflet the loaded <img> itself, so the image is not fetched a second time.
      var overlay = L.imageOverlay(image, bounds, {
        opacity: this.options.opacity,
        interactive: false,
        className: "secure-layers-overlay",
      }).addTo(this._map);
      if (this._overlay) {
        this._map.removeLayer(this._overlay);
      }
      this._overlay = overlay;
      this._failures = 0;
      this._showStatus("");
      this.fire("load", { url: url });
    },
  });

  L.secureLayers = {
    dynamicLayer: function (exportUrl, options) {
      return new L.SecureLayersDynamic(exportUrl, options);
    },
  };
})();

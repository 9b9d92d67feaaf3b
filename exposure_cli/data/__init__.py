"""Training and evaluation data: the real-photo corpus, the exposure simulator and the IEA40K loader.

* :mod:`.simulator` — physically based exposure errors with exact labels (numpy + OpenCV, no torch).
* :mod:`.hdr` — HDR radiance maps: perspective crops, single-exposure renders, Mertens-fusion ideals.
* :mod:`.dataset` — the torch ``ExposureDataset`` (simulated corpus or the IEA40K layout).
* :mod:`.iea40k` — reading and writing the IEA40K layout (images, ``.npy`` residuals, CSV).
* :mod:`.corpus` — the corpus builder driven by the committed ``manifest.json``.
"""

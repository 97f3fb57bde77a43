"""The interactive one-shot drawing demo of the Reptile article, served as a local web page.

* :mod:`.strokes` turns pen strokes into the 28×28 images the network sees;
* :mod:`.predict` fine-tunes a copy of the meta-learned Φ on the class drawings and
  classifies the input (and the same from a random initialisation);
* :mod:`.models` loads the built-in network or a training run;
* :mod:`.api` and :mod:`.server` answer the page and the JSON API (``minireptile demo``).
"""

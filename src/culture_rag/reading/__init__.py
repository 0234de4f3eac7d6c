"""Reading the passages for an answer: candidate sentences, their features, a fitted scorer,
and the answerer that picks, cites or declines. No hand rule decides what is quoted: the weights
are fitted on the train split (bench/quality/fit.py) and stored in data/answerer.json."""

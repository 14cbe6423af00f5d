"""Text to replayable batches: corpora (corpus; hub_corpus, synthetic, doc_clean), checks of local
files (textcheck), the byte-level BPE tokenizer (tokenizer), the token cache and its manifest (token_cache,
token_manifest) and batches (batches). pipeline joins them (`load` -> TokenData) and is what the rest
of the harness imports.

May import: growth, growth.store.
"""

"""Pure media work on local files: no network, no queue, no settings object.

``process_take`` is the entry point: a folder of chunks in, a folder of outputs out.
"""

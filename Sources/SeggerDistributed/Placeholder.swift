// SeggerDistributed: see the module's files.

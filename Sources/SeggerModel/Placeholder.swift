// SeggerModel: see the module's files.

// SeggerTrain: see the module's files.

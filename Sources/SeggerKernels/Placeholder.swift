// SeggerKernels: see the module's files.

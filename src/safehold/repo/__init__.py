"""The repository layer: format, encryption, compression, chunking, packs, index, snapshots."""

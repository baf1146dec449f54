"""Scale-out on the side: the Ray Data adapter and the memory-mapped vector store."""

"""Provider adapters: each translates one SDK to and from tollgate's neutral types."""

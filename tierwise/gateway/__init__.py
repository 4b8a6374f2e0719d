"""The front door: admission, planning, execution with fallback, and the ledger record."""

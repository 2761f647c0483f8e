-- Erasures also delete the person's points ledger: how many rows, per erasure.
ALTER TABLE erasures ADD COLUMN IF NOT EXISTS ledger_deleted UInt64 DEFAULT 0

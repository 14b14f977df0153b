"""`medrelease release`: merge -> gate -> quantize -> card -> publish, skipping current steps."""

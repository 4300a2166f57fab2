"""The connected side's view of many sites: their signed receipts, kept per site, and what each runs."""

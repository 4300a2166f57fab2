"""Connected side: collect content named in a profile into a bundle (one module per content kind)."""

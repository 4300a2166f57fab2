"""OCI: image references, media types, the registry client and the image layout store."""

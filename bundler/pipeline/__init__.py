"""The orchestration over the registered content kinds: build, verify, import, prune, inspect and
diff, the site's HTTPS application and its status page. Above the kinds; below the CLI."""

"""Site side: the site's configuration and state, and seeding its services from a verified bundle."""

"""edgeserving's scheduling core: types, profiles, queues, policies, the engine and its drivers."""

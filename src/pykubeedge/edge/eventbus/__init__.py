"""EventBus (edgecore module ``eventbus``): the MQTT bridge between apps, devices and the edge."""

"""Router (cloudcore module ``router``): Rules and RuleEndpoints route REST calls and MQTT
messages between cloud endpoints and edge apps."""

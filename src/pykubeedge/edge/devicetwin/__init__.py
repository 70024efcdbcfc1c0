"""DeviceTwin (edgecore module ``twin``): device membership, twins and state, over MQTT."""

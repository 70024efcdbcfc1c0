"""ServiceBus (edgecore module ``servicebus``): cloud rule requests to local HTTP services, and
local callers' requests up to the cloud through the rules that allow them."""

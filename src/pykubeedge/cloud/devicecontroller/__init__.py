"""DeviceController (cloudcore module ``devicecontroller``): Devices down to the edges, their
reports up into DeviceStatus objects."""

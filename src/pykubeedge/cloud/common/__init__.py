"""What cloudcore's modules share without depending on each other: the ObjectSync records
interface (:mod:`.objectsync`)."""

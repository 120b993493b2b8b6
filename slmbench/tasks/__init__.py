"""What every strategy is given alike: the task definition (YAML), its data read and split, the
labelled examples and predictions over its labels, and the profile's budget."""

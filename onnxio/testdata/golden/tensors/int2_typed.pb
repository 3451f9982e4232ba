*Û7B
int2_typed
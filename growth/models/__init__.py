"""The two model families and what they share: the NNX GPT (gpt) and llama (llama), norms, dense
layers and the residual block (layers), attention with its hand-written backward pass (attention),
msg's growth masks (masks), the family record width growth reads (family) and the config checks run
before anything is built (checks).

May import: growth.
"""

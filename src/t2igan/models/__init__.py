"""Networks: DAMSM encoders, SSA-GAN, DF-GAN (and later AttnGAN, StackGAN)."""

"""Networks (StyleGAN2 generator and discriminator), their ops, checkpoint formats and latent-direction math."""

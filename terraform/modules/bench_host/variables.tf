variable "name" {
  description = "Name prefix for every resource."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the host."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR of the VPC (the host may reach the internal NLB anywhere in it)."
  type        = string
}

variable "subnet_id" {
  description = "Private subnet for the host."
  type        = string
}

variable "nlb_port" {
  description = "Port of the internal NLB's listener."
  type        = number
}

variable "instance_type" {
  description = "CPU instance type; dsa-bench needs a few cores for thousands of concurrent streams."
  type        = string
  default     = "c7i.4xlarge"
}

variable "ami_id" {
  description = "AMI override; null for the latest Ubuntu 24.04 LTS."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
